//! The boosted trees laid out flat for serving: prediction and TreeSHAP without allocation.
//!
//! `forust-ml` predicts tree by tree over a column-major `f64` copy of the batch, and its
//! TreeSHAP clones a growing path vector at every node it visits; in a profile of `serve` at
//! 1,000 entities the two were a quarter of the ensemble's time (GBDT prediction 11 %, the
//! SHAP explanations of rows near a threshold 13 %, a third of that in `malloc` / `free`).
//! [`Forest`] holds the same trees as flat node arrays and walks them over the row-major
//! batch as it comes; its TreeSHAP is forust's algorithm (Lundberg et al., 2018, as in
//! XGBoost) with one preallocated path buffer, segmented per depth instead of cloned.
//!
//! Both give forust's results bit for bit: the same `f64` sums in the same order for
//! prediction, the same `f32` path arithmetic for SHAP (tests compare them on trained
//! models). One difference is deliberate: with a non-NaN `missing` value forust panics on a
//! NaN feature; here NaN takes the missing branch too.

use forust_ml::GradientBooster;

use crate::data::Features;

/// One node. A leaf's children are itself (its `feature` is 0), so a walk of a fixed number
/// of levels stays on the leaf it reached.
#[derive(Debug, Clone, Copy)]
struct Node {
    split: f64,
    feature: u32,
    left: u32,
    right: u32,
    missing: u32,
    /// The leaf's value (forust's `weight_value`).
    weight: f32,
    /// The training rows' hessian sum (TreeSHAP's cover).
    cover: f32,
}

impl Node {
    fn is_leaf(&self, index: usize) -> bool {
        self.left as usize == index
    }
}

/// One tree's nodes as `Forest::nodes[start..]`, children indexed from `start`.
#[derive(Debug, Clone, Copy)]
struct Tree {
    start: usize,
    /// Levels from the root to its deepest leaf.
    levels: usize,
    /// The tree's expected value (forust's `get_average_leaf_weights(0)`): SHAP's bias share.
    expected: f64,
}

/// The trees used for prediction, flat.
#[derive(Debug, Clone)]
pub(crate) struct Forest {
    base: f64,
    missing: f64,
    nodes: Vec<Node>,
    trees: Vec<Tree>,
    /// Longest root-to-leaf path (in nodes), for sizing the SHAP path buffer.
    depth: usize,
}

impl Forest {
    /// The prediction trees of `booster` (the best iteration's, under early stopping).
    pub(crate) fn new(booster: &GradientBooster) -> Self {
        let n = booster.prediction_iteration.unwrap_or(booster.trees.len());
        let mut nodes = Vec::new();
        let mut trees = Vec::with_capacity(n);
        let mut depth = 0;
        for tree in &booster.trees[..n] {
            let start = nodes.len();
            // forust's children are positions in `tree.nodes`.
            let index = |i: usize| u32::try_from(i).expect("fewer than 2^32 nodes a tree");
            for (i, node) in tree.nodes.iter().enumerate() {
                nodes.push(if node.is_leaf {
                    Node {
                        split: 0.0,
                        feature: 0,
                        left: index(i),
                        right: index(i),
                        missing: index(i),
                        weight: node.weight_value,
                        cover: node.hessian_sum,
                    }
                } else {
                    Node {
                        split: node.split_value,
                        feature: u32::try_from(node.split_feature)
                            .expect("fewer than 2^32 features"),
                        left: index(node.left_child),
                        right: index(node.right_child),
                        missing: index(node.missing_node),
                        weight: node.weight_value,
                        cover: node.hessian_sum,
                    }
                });
            }
            let levels = levels(&nodes[start..], 0);
            depth = depth.max(levels + 1);
            trees.push(Tree {
                start,
                levels,
                expected: tree.get_average_leaf_weights(0),
            });
        }
        Forest {
            base: booster.base_score,
            missing: booster.missing,
            nodes,
            trees,
            depth,
        }
    }

    fn is_missing(&self, v: f64) -> bool {
        v.is_nan() || v == self.missing
    }

    /// The child of `node` that `row` goes to (an index relative to the tree's start).
    #[inline]
    fn child(&self, node: &Node, row: &[f64]) -> usize {
        let v = row[node.feature as usize];
        (if self.is_missing(v) {
            node.missing
        } else if v < node.split {
            node.left
        } else {
            node.right
        }) as usize
    }

    /// The log-odds of every row of `x` (its column count is checked by the caller).
    ///
    /// Walking one row down one tree is a chain of dependent loads and unpredictable
    /// branches. Here [`GROUP`] rows go down each tree together, a fixed number of levels
    /// (leaves lead to themselves), with the child picked by selects rather than branches:
    /// independent chains the CPU overlaps. Blocks of [`BLOCK_ROWS`] rows keep their features
    /// in cache across all the trees; each row's sum still adds the trees in order.
    pub(crate) fn predict(&self, x: Features<'_>) -> Vec<f64> {
        let mut out = vec![self.base; x.rows()];
        for (b, sums) in out.chunks_mut(BLOCK_ROWS).enumerate() {
            let first = b * BLOCK_ROWS;
            for t in &self.trees {
                let nodes = &self.nodes[t.start..];
                for (g, sums) in sums.chunks_mut(GROUP).enumerate() {
                    let row0 = first + g * GROUP;
                    let mut at = [0u32; GROUP];
                    for _ in 0..t.levels {
                        for (j, a) in at.iter_mut().enumerate().take(sums.len()) {
                            let n = &nodes[*a as usize];
                            let v = x.get(row0 + j, n.feature as usize);
                            let next = if v < n.split { n.left } else { n.right };
                            *a = if self.is_missing(v) { n.missing } else { next };
                        }
                    }
                    for (s, a) in sums.iter_mut().zip(at) {
                        *s += f64::from(nodes[a as usize].weight);
                    }
                }
            }
        }
        out
    }

    /// SHAP contributions of every row, `rows × (cols + 1)` row-major, the bias last.
    pub(crate) fn contributions(&self, x: Features<'_>) -> Vec<f64> {
        let cols = x.cols();
        let mut out = vec![0.0; x.rows() * (cols + 1)];
        let mut row = vec![0.0; cols];
        // Each level of the recursion keeps its path (at most `depth + 1` elements) in its
        // own segment of the buffer.
        let levels = self.depth + 2;
        let mut path = vec![PathElement::default(); levels * (levels + 1) / 2 + levels];
        for (r, contribs) in out.chunks_exact_mut(cols + 1).enumerate() {
            x.row_into(r, &mut row);
            contribs[cols] = self.base;
            for t in &self.trees {
                contribs[cols] += t.expected;
                let walk = Walk {
                    forest: self,
                    nodes: &self.nodes[t.start..],
                    row: &row,
                };
                // The root's "parent feature" matches no feature (forust uses cols + 100).
                walk.shap(contribs, 0, &mut path, 0, 1.0, 1.0, usize::MAX);
            }
        }
        out
    }
}

/// Rows walked down a tree together.
const GROUP: usize = 8;

/// Rows whose features stay in cache while every tree is walked.
const BLOCK_ROWS: usize = 64;

/// Levels below `index` to its deepest leaf.
fn levels(nodes: &[Node], index: usize) -> usize {
    let n = &nodes[index];
    if n.is_leaf(index) {
        return 0;
    }
    let mut deepest = levels(nodes, n.left as usize).max(levels(nodes, n.right as usize));
    if n.missing != n.left && n.missing != n.right {
        deepest = deepest.max(levels(nodes, n.missing as usize));
    }
    1 + deepest
}

#[derive(Debug, Clone, Copy, Default)]
struct PathElement {
    feature: usize,
    zero: f32,
    one: f32,
    pweight: f32,
}

/// One tree and one row under TreeSHAP.
struct Walk<'a> {
    forest: &'a Forest,
    nodes: &'a [Node],
    row: &'a [f64],
}

impl Walk<'_> {
    /// forust's `tree_shap`; `path[..=depth]` is this node's path once extended, and the
    /// children's copies go after it.
    #[allow(clippy::too_many_arguments)]
    fn shap(
        &self,
        contribs: &mut [f64],
        index: usize,
        path: &mut [PathElement],
        mut depth: usize,
        parent_zero: f32,
        parent_one: f32,
        parent_feature: usize,
    ) {
        let node = &self.nodes[index];
        extend_path(path, depth, parent_zero, parent_one, parent_feature);
        if node.is_leaf(index) {
            for i in 1..=depth {
                let w = unwound_path_sum(path, depth, i);
                let el = path[i];
                contribs[el.feature] += f64::from(w * (el.one - el.zero) * node.weight);
            }
            return;
        }
        let hot = self.forest.child(node, self.row) as u32;
        let (l, r, m) = (node.left, node.right, node.missing);
        let three = m != l && m != r;
        let children: [u32; 3] = if three {
            if hot == r {
                [r, l, m]
            } else if hot == l {
                [l, r, m]
            } else {
                [m, l, r]
            }
        } else if hot == r {
            [r, l, u32::MAX]
        } else {
            [l, r, u32::MAX]
        };
        let feature = node.feature as usize;
        let (mut incoming_zero, mut incoming_one) = (1.0f32, 1.0f32);
        if let Some(at) = (0..=depth).find(|&i| path[i].feature == feature) {
            incoming_zero = path[at].zero;
            incoming_one = path[at].one;
            unwind_path(path, depth, at);
            depth -= 1;
        }
        for (i, &child) in children.iter().take(if three { 3 } else { 2 }).enumerate() {
            let child = child as usize;
            let zero = (self.nodes[child].cover / node.cover) * incoming_zero;
            let one = if i == 0 { incoming_one } else { 0.0 };
            let (mine, theirs) = path.split_at_mut(depth + 1);
            theirs[..=depth].copy_from_slice(mine);
            self.shap(contribs, child, theirs, depth + 1, zero, one, feature);
        }
    }
}

fn extend_path(path: &mut [PathElement], depth: usize, zero: f32, one: f32, feature: usize) {
    path[depth] = PathElement {
        feature,
        zero,
        one,
        pweight: if depth == 0 { 1.0 } else { 0.0 },
    };
    for i in (0..depth).rev() {
        path[i + 1].pweight += (one * path[i].pweight * (i + 1) as f32) / (depth + 1) as f32;
        path[i].pweight = (zero * path[i].pweight * (depth - i) as f32) / (depth + 1) as f32;
    }
}

fn unwind_path(path: &mut [PathElement], depth: usize, at: usize) {
    let (one, zero) = (path[at].one, path[at].zero);
    let mut next_one_portion = path[depth].pweight;
    for i in (0..depth).rev() {
        if one != 0.0 {
            let tmp = path[i].pweight;
            path[i].pweight = (next_one_portion * (depth + 1) as f32) / ((i + 1) as f32 * one);
            next_one_portion =
                tmp - (path[i].pweight * zero * (depth - i) as f32) / (depth + 1) as f32;
        } else {
            path[i].pweight = (path[i].pweight * (depth + 1) as f32) / (zero * (depth - i) as f32);
        }
    }
    for i in at..depth {
        path[i].feature = path[i + 1].feature;
        path[i].zero = path[i + 1].zero;
        path[i].one = path[i + 1].one;
    }
}

fn unwound_path_sum(path: &[PathElement], depth: usize, at: usize) -> f32 {
    let (one, zero) = (path[at].one, path[at].zero);
    let mut next_one_portion = path[depth].pweight;
    let mut total = 0.0;
    for i in (0..depth).rev() {
        if one != 0.0 {
            let tmp = (next_one_portion * (depth + 1) as f32) / ((i + 1) as f32 * one);
            total += tmp;
            next_one_portion =
                path[i].pweight - tmp * zero * ((depth - i) as f32 / (depth + 1) as f32);
        } else if zero != 0.0 {
            total += (path[i].pweight / zero) / ((depth - i) as f32 / (depth + 1) as f32);
        }
    }
    total
}
