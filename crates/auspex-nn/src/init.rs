//! Reproducible randomness that does not go through burn's process-global generator: Glorot
//! initialisation of every float parameter and dropout masks, both drawn from a caller-owned
//! ChaCha generator. Concurrent trainings (test threads, the train crate's parallel branches)
//! therefore cannot perturb each other.

use burn::module::{Module, ModuleMapper, Param};
use burn::tensor::{Tensor, TensorData};
use rand::RngExt;
use rand_chacha::ChaCha8Rng;

/// Re-draws every float parameter: weights (rank ≥ 2) Glorot-uniform, biases (rank 1) zero.
struct GlorotInit<'a> {
    rng: &'a mut ChaCha8Rng,
}

impl ModuleMapper for GlorotInit<'_> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let shape = param.lazy_shape();
        let dims = shape.as_slice().to_vec();
        let n = shape.num_elements();
        let values: Vec<f32> = if dims.len() < 2 {
            vec![0.0; n]
        } else {
            // Linear [in, out] (or [out, in]); Conv1d [out, in, k]: both fans share the
            // receptive field, so the sum of the first two dims times the rest is symmetric.
            let receptive: usize = dims[2..].iter().product();
            let fans = ((dims[0] + dims[1]) * receptive).max(1) as f64;
            let a = (6.0 / fans).sqrt();
            (0..n)
                .map(|_| ((self.rng.random::<f64>() * 2.0 - 1.0) * a) as f32)
                .collect()
        };
        param.map(move |old| {
            let device = old.device();
            let grad = old.is_require_grad();
            Tensor::<D>::from_data(TensorData::new(values, shape), &device).set_require_grad(grad)
        })
    }
}

/// Returns `module` with all float parameters re-drawn from `rng`.
pub fn seeded_init<M: Module>(module: M, rng: &mut ChaCha8Rng) -> M {
    module.map(&mut GlorotInit { rng })
}

/// Inverted dropout with a mask from `rng`; the identity when `rng` is `None` (inference) or
/// `p == 0`.
pub fn dropout<const D: usize>(x: Tensor<D>, p: f64, rng: Option<&mut ChaCha8Rng>) -> Tensor<D> {
    let Some(rng) = rng else { return x };
    if p <= 0.0 {
        return x;
    }
    let keep = 1.0 - p;
    let scale = (1.0 / keep) as f32;
    let shape = x.shape();
    let mask: Vec<f32> = (0..shape.num_elements())
        .map(|_| {
            if rng.random::<f64>() < keep {
                scale
            } else {
                0.0
            }
        })
        .collect();
    let mask = Tensor::<D>::from_data(TensorData::new(mask, shape), &x.device());
    x * mask
}
