//! A trained network with its config, and its self-describing byte form:
//! `b"AUSPXNN1"`, a little-endian `u32` header length, a JSON header
//! `{"branch": "...", "config": {...}}`, then the weights as a burnpack record
//! (`Module::into_record().into_bytes()`, burn 0.22's non-generic record system).

use burn::store::ModuleRecord;
use burn::tensor::{Bytes, Device};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::train::Net;
use crate::{NnDevice, NnError};

const MAGIC: &[u8; 8] = b"AUSPXNN1";

#[derive(Serialize, Deserialize)]
struct Header {
    branch: String,
    config: serde_json::Value,
}

/// A network in inference mode on its device, with the config that built it.
#[derive(Debug, Clone)]
pub(crate) struct Core<N: Net> {
    pub config: N::Config,
    pub net: N,
    pub device: NnDevice,
    pub burn: Device,
}

impl<N: Net> Core<N> {
    pub fn new(config: N::Config, net: N, device: NnDevice) -> Result<Self, NnError> {
        let burn = device.burn_device()?;
        Ok(Core {
            config,
            net,
            device,
            burn,
        })
    }

    /// An untrained network with seeded Glorot weights (benchmarks, smoke tests).
    pub fn init(config: N::Config, device: NnDevice, seed: u64) -> Result<Self, NnError> {
        let burn = device.burn_device()?;
        let mut rng = <ChaCha8Rng as rand::SeedableRng>::seed_from_u64(seed);
        let net = crate::init::seeded_init(N::build(&config, &burn)?, &mut rng).valid();
        Ok(Core {
            config,
            net,
            device,
            burn,
        })
    }

    pub fn to_bytes(&self) -> Result<Vec<u8>, NnError> {
        let header = serde_json::to_vec(&Header {
            branch: N::BRANCH.to_string(),
            config: serde_json::to_value(&self.config)
                .map_err(|e| NnError::Format(format!("config to JSON: {e}")))?,
        })
        .map_err(|e| NnError::Format(format!("header to JSON: {e}")))?;
        let record = self
            .net
            .clone()
            .into_record()
            .into_bytes()
            .map_err(|e| NnError::Record(e.to_string()))?;
        let header_len = u32::try_from(header.len())
            .map_err(|_| NnError::Format("header longer than 4 GiB".into()))?;
        let mut out = Vec::with_capacity(12 + header.len() + record.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&header_len.to_le_bytes());
        out.extend_from_slice(&header);
        out.extend_from_slice(&record);
        Ok(out)
    }

    pub fn from_bytes(bytes: &[u8], device: NnDevice) -> Result<Self, NnError> {
        if bytes.len() < 12 || &bytes[..8] != MAGIC {
            return Err(NnError::Format("not an auspex-nn model (bad magic)".into()));
        }
        let len = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes")) as usize;
        let Some(header) = bytes.get(12..12 + len) else {
            return Err(NnError::Format("truncated header".into()));
        };
        let header: Header = serde_json::from_slice(header)
            .map_err(|e| NnError::Format(format!("header JSON: {e}")))?;
        if header.branch != N::BRANCH {
            return Err(NnError::Format(format!(
                "bytes hold a `{}` model, expected `{}`",
                header.branch,
                N::BRANCH
            )));
        }
        let config: N::Config = serde_json::from_value(header.config)
            .map_err(|e| NnError::Format(format!("{} config: {e}", N::BRANCH)))?;
        let burn = device.burn_device()?;
        let record = ModuleRecord::from_bytes(Bytes::from_bytes_vec(bytes[12 + len..].to_vec()))
            .map_err(|e| NnError::Record(e.to_string()))?;
        let net = N::build(&config, &burn)?
            .try_load_record(record)
            .map_err(|e| NnError::Record(e.to_string()))?
            .valid();
        Ok(Core {
            config,
            net,
            device,
            burn,
        })
    }
}
