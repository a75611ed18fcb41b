//! The LSTM's window scoring on the CPU, outside the tensor library.
//!
//! Serving scores every entity's whole window on every tick. Through burn's `flex` backend
//! that cost is mostly the gates' activations: one scalar `libm` call per gate value, four
//! gates of `hidden` values per step, `t` steps per window (about 65 % of the branch's time in
//! a profile of `kafka_e2e` at 1,000 entities; the matrix products were under 15 %). Here the
//! same arithmetic runs as plain loops the compiler vectorises, with an exponential accurate
//! to a few parts in 10⁷, so the probabilities agree with burn's to about 10⁻⁶ (a test checks
//! both on the same weights).
//!
//! Only what [`super::Lstm`] builds is handled: a forward (not reversed) LSTM with a forget
//! gate, sigmoid gates, tanh cell and hidden activations, no cell clipping, and a linear head
//! with sigmoid outputs. [`LstmKernel::new`] declines anything else and the caller keeps burn.

use burn::module::Param;
use burn::nn::Linear;
use burn::tensor::Tensor;

use crate::K;

/// The weights of one LSTM branch, laid out for per-window loops.
#[derive(Debug, Clone)]
pub(crate) struct LstmKernel {
    d_in: usize,
    h: usize,
    /// `[d_in][4h]`, gates in the order input, forget, output, cell.
    wx: Vec<f32>,
    /// `[h][4h]`, same gate order.
    wh: Vec<f32>,
    /// `[4h]`: both transforms' biases summed.
    b: Vec<f32>,
    /// `[h][K]`
    head_w: Vec<f32>,
    /// `[K]`
    head_b: Vec<f32>,
}

fn values(p: &Param<Tensor<2>>) -> Vec<f32> {
    p.val()
        .into_data()
        .try_into_vec::<f32>()
        .expect("weights are f32")
}

fn bias(l: &Linear, n: usize) -> Vec<f32> {
    l.bias.as_ref().map_or_else(
        || vec![0.0; n],
        |b| {
            b.val()
                .into_data()
                .try_into_vec::<f32>()
                .expect("biases are f32")
        },
    )
}

impl LstmKernel {
    /// The kernel for `lstm` and `head`, or `None` for an LSTM built otherwise than
    /// [`super::Lstm`] builds it.
    pub(crate) fn new(lstm: &burn::nn::Lstm, head: &Linear) -> Option<Self> {
        if lstm.reverse || lstm.clip.is_some() || lstm.input_forget || !lstm.batch_first {
            return None;
        }
        let forget = lstm.forget_gate.as_ref()?;
        let gates = [&lstm.input_gate, forget, &lstm.output_gate, &lstm.cell_gate];
        let h = lstm.d_hidden;
        let [d_in, out] = gates[0].input_transform.weight.shape().dims();
        if out != h || head.weight.shape().dims() != [h, K] || !(4 * h).is_multiple_of(BLOCK) {
            return None;
        }
        let (mut wx, mut wh, mut b) = (
            vec![0.0; d_in * 4 * h],
            vec![0.0; h * 4 * h],
            vec![0.0; 4 * h],
        );
        for (g, gate) in gates.iter().enumerate() {
            let (x, hh) = (
                values(&gate.input_transform.weight),
                values(&gate.hidden_transform.weight),
            );
            for r in 0..d_in {
                wx[r * 4 * h + g * h..r * 4 * h + (g + 1) * h]
                    .copy_from_slice(&x[r * h..(r + 1) * h]);
            }
            for r in 0..h {
                wh[r * 4 * h + g * h..r * 4 * h + (g + 1) * h]
                    .copy_from_slice(&hh[r * h..(r + 1) * h]);
            }
            let (bx, bh) = (
                bias(&gate.input_transform, h),
                bias(&gate.hidden_transform, h),
            );
            for j in 0..h {
                b[g * h + j] = bx[j] + bh[j];
            }
        }
        Some(LstmKernel {
            d_in,
            h,
            wx,
            wh,
            b,
            head_w: values(&head.weight),
            head_b: bias(head, K),
        })
    }

    /// `n × K` probabilities of `n` windows of `t` steps of `d_in` channels (`x` is `n × t ×
    /// d_in`, oldest step first), each from a zero state.
    pub(crate) fn predict(&self, x: &[f32], n: usize, t: usize) -> Vec<f32> {
        debug_assert_eq!(x.len(), n * t * self.d_in);
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: this CPU has AVX2 and FMA, checked just above.
            return unsafe { self.predict_avx2_fma(x, t) };
        }
        self.windows::<false>(x, t)
    }

    /// The same loops compiled for AVX2 and FMA (the release build targets baseline x86-64,
    /// whose 4-wide SSE2 left the kernel barely faster than burn).
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    fn predict_avx2_fma(&self, x: &[f32], t: usize) -> Vec<f32> {
        self.windows::<true>(x, t)
    }

    /// `FMA`: multiply-adds fused (only where the CPU has them: otherwise `mul_add` is a libm
    /// call).
    ///
    /// Windows go through in groups of [`GROUP`], step by step together: each weight loaded
    /// from cache serves every window of the group, and the group's gate sums for a block of
    /// outputs ([`BLOCK`] × [`GROUP`] of them) stay in registers over every input and hidden
    /// value — enough independent multiply-adds to keep both FMA units busy, where one window
    /// at a time waited on the latency of four accumulators.
    #[inline(always)]
    fn windows<const FMA: bool>(&self, x: &[f32], t: usize) -> Vec<f32> {
        let (d, h) = (self.d_in, self.h);
        let gates = 4 * h;
        let n = x.len() / (t * d).max(1);
        let mut out = Vec::with_capacity(n * K);
        // The group's current inputs and hidden state, `[value][window]`, so one value of
        // every window is one contiguous load.
        let mut xs = vec![0.0f32; d * GROUP];
        let mut hid = vec![0.0f32; h * GROUP];
        let mut cell = vec![0.0f32; h * GROUP];
        // Gate sums, `[gate][window]` like the state, so the activations and the state update
        // are straight runs over contiguous values.
        let mut g = vec![0.0f32; gates * GROUP];
        for first in (0..n).step_by(GROUP) {
            let count = GROUP.min(n - first);
            let group = &x[first * t * d..(first + count) * t * d];
            hid.fill(0.0);
            cell.fill(0.0);
            // A short last group leaves the missing windows' inputs at zero.
            xs.fill(0.0);
            for s in 0..t {
                for (w, window) in group.chunks_exact(t * d).enumerate() {
                    for (k, v) in window[s * d..(s + 1) * d].iter().enumerate() {
                        xs[k * GROUP + w] = *v;
                    }
                }
                for jb in 0..gates / BLOCK {
                    let cols = jb * BLOCK..(jb + 1) * BLOCK;
                    let mut acc = [[0.0f32; BLOCK]; GROUP];
                    for a in acc.iter_mut() {
                        a.copy_from_slice(&self.b[cols.clone()]);
                    }
                    for (v, row) in xs.chunks_exact(GROUP).zip(self.wx.chunks_exact(gates)) {
                        let row: &[f32; BLOCK] = row[cols.clone()].try_into().expect("a block");
                        for (a, v) in acc.iter_mut().zip(v) {
                            axpy::<FMA>(a, *v, row);
                        }
                    }
                    for (v, row) in hid.chunks_exact(GROUP).zip(self.wh.chunks_exact(gates)) {
                        let row: &[f32; BLOCK] = row[cols.clone()].try_into().expect("a block");
                        for (a, v) in acc.iter_mut().zip(v) {
                            axpy::<FMA>(a, *v, row);
                        }
                    }
                    let block = &mut g[jb * BLOCK * GROUP..(jb + 1) * BLOCK * GROUP];
                    for (c, out) in block.chunks_exact_mut(GROUP).enumerate() {
                        for (o, a) in out.iter_mut().zip(&acc) {
                            *o = a[c];
                        }
                    }
                }
                let (ifo, c) = g.split_at_mut(3 * h * GROUP);
                for v in ifo.iter_mut() {
                    *v = sigmoid(*v);
                }
                for v in c.iter_mut() {
                    *v = tanh(*v);
                }
                let (i, rest) = ifo.split_at(h * GROUP);
                let (f, o) = rest.split_at(h * GROUP);
                for j in 0..h * GROUP {
                    cell[j] = f[j] * cell[j] + i[j] * c[j];
                    hid[j] = o[j] * tanh(cell[j]);
                }
            }
            for w in 0..count {
                let mut logits = [0.0f32; K];
                logits.copy_from_slice(&self.head_b);
                for (j, row) in self.head_w.chunks_exact(K).enumerate() {
                    for k in 0..K {
                        logits[k] += hid[j * GROUP + w] * row[k];
                    }
                }
                out.extend(logits.iter().map(|l| sigmoid(*l)));
            }
        }
        out
    }
}

/// Windows scored together.
const GROUP: usize = 4;

/// Gate outputs summed together per window: two 8-wide registers (eight accumulators for a
/// group, with room left for the weights and the broadcast input).
const BLOCK: usize = 16;

/// `y += a · x`
#[inline(always)]
fn axpy<const FMA: bool>(y: &mut [f32], a: f32, x: &[f32]) {
    for (y, x) in y.iter_mut().zip(x) {
        *y = if FMA { a.mul_add(*x, *y) } else { *y + a * x };
    }
}

/// `e^x` for f32, branch-free so loops over it vectorise: `2^n · e^r` with `|r| ≤ ln 2 / 2`
/// and a degree-7 Taylor polynomial for `e^r` (relative error below 2·10⁻⁷ before rounding).
#[inline(always)]
fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    // ln 2 split in two so that `n · LN2_HI` is exact.
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Adding 1.5 · 2²³ rounds to the nearest integer without a libm call, and leaves that
    // integer in the low bits of the sum's representation.
    const ROUND: f32 = 12_582_912.0;
    let x = x.clamp(-87.0, 88.0);
    let shifted = x * LOG2E + ROUND;
    let n = shifted - ROUND;
    let r = x - n * LN2_HI - n * LN2_LO;
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0
                    + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0 + r / 5040.0))))));
    // 2^n from the bits: `shifted`'s are ROUND's plus n (|n| ≤ 127, far inside its ulp-1
    // range), so no float-to-int conversion (which does not vectorise: Rust's `as` saturates).
    let biased = shifted
        .to_bits()
        .wrapping_sub(ROUND.to_bits())
        .wrapping_add(127);
    p * f32::from_bits(biased << 23)
}

#[inline(always)]
fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + exp(-x))
}

#[inline(always)]
fn tanh(x: f32) -> f32 {
    // 1 - 2 / (e^{2x} + 1): exact limits ±1, and no cancellation trouble at the sizes an
    // LSTM state takes.
    1.0 - 2.0 / (exp(2.0 * x) + 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_sigmoid_and_tanh_match_libm() {
        let mut worst = (0.0f32, 0.0f32, 0.0f32);
        let mut x = -30.0f32;
        while x < 30.0 {
            let e = (exp(x) - x.exp()).abs() / x.exp();
            let s = (sigmoid(x) - 1.0 / (1.0 + (-x).exp())).abs();
            let t = (tanh(x) - x.tanh()).abs();
            worst = (worst.0.max(e), worst.1.max(s), worst.2.max(t));
            x += 0.001_7;
        }
        assert!(worst.0 < 1e-6, "exp relative error {}", worst.0);
        assert!(worst.1 < 1e-6, "sigmoid error {}", worst.1);
        assert!(worst.2 < 1e-6, "tanh error {}", worst.2);
        assert_eq!(exp(-200.0), exp(-87.0));
        assert!(exp(200.0).is_finite());
        assert_eq!(tanh(50.0), 1.0);
        assert_eq!(tanh(-50.0), -1.0);
    }
}
