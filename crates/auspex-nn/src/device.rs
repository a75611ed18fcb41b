//! Run-time backend choice: the one place that names a concrete burn backend.

use std::fmt;
use std::str::FromStr;

use burn::tensor::Device;

use crate::NnError;

/// Where the branches run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NnDevice {
    /// burn's pure-Rust `flex` CPU backend (always available).
    #[default]
    Cpu,
    /// burn's wgpu backend (Vulkan/Metal/…); needs the crate's `gpu` feature.
    Wgpu,
}

impl NnDevice {
    /// The burn device for inference. Never `Device::default()`, which prefers wgpu whenever it
    /// is compiled in.
    pub fn burn_device(self) -> Result<Device, NnError> {
        match self {
            NnDevice::Cpu => Ok(Device::flex()),
            #[cfg(feature = "gpu")]
            NnDevice::Wgpu => Ok(Device::wgpu(burn::tensor::DeviceKind::DefaultDevice)),
            #[cfg(not(feature = "gpu"))]
            NnDevice::Wgpu => Err(NnError::Device(
                "`wgpu` requested but this binary was built without the `gpu` feature \
                 (rebuild with `--features gpu`)"
                    .into(),
            )),
        }
    }
}

impl FromStr for NnDevice {
    type Err = NnError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "cpu" => Ok(NnDevice::Cpu),
            "wgpu" => {
                if cfg!(feature = "gpu") {
                    Ok(NnDevice::Wgpu)
                } else {
                    Err(NnError::Device(
                        "`wgpu` requested but this binary was built without the `gpu` feature"
                            .into(),
                    ))
                }
            }
            other => Err(NnError::Device(format!(
                "unknown device `{other}`: expected `cpu` or `wgpu`"
            ))),
        }
    }
}

impl fmt::Display for NnDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NnDevice::Cpu => "cpu",
            NnDevice::Wgpu => "wgpu",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_and_rejects_others() {
        assert_eq!("cpu".parse::<NnDevice>().unwrap(), NnDevice::Cpu);
        assert_eq!(" CPU ".parse::<NnDevice>().unwrap(), NnDevice::Cpu);
        let err = "cuda".parse::<NnDevice>().unwrap_err().to_string();
        assert!(err.contains("expected `cpu` or `wgpu`"), "{err}");
        let wgpu = "wgpu".parse::<NnDevice>();
        if cfg!(feature = "gpu") {
            assert_eq!(wgpu.unwrap(), NnDevice::Wgpu);
        } else {
            let err = wgpu.unwrap_err().to_string();
            assert!(err.contains("without the `gpu` feature"), "{err}");
        }
    }
}
