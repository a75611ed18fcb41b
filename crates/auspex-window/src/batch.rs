//! Arrow output: the feature batch (one row of features per entity) for the tabular branches,
//! and the sequence batch (one imputed series and mask per metric per entity) for the sequence
//! branches.

use std::sync::Arc;

use arrow_array::{ArrayRef, FixedSizeListArray, Float32Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, FieldRef, Schema, SchemaRef};
use auspex_model::EntityId;

use crate::features::{Scratch, to_f32};
use crate::{FeatureSpec, WindowError, WindowStore};

/// Name of the entity column (values are [`EntityId::as_str`]) in both batches.
pub const ENTITY_COLUMN: &str = "entity";

/// Suffix of a metric's mask column in the sequence batch.
pub const MASK_SUFFIX: &str = ".mask";

impl WindowStore {
    /// Schema of [`WindowStore::feature_batch`]: `entity` (Utf8), then one non-null Float32
    /// column per feature, named and ordered as in the spec.
    pub fn feature_schema(&self) -> SchemaRef {
        self.schemas.features.clone()
    }

    /// Schema of [`WindowStore::sequence_batch`]: `entity` (Utf8), then per tracked metric
    /// `<metric>`, its imputed series, and `<metric>.mask`, 1.0 where observed; both
    /// FixedSizeList<Float32> of `length`, oldest slot first.
    pub fn sequence_schema(&self) -> SchemaRef {
        self.schemas.sequences.clone()
    }

    /// One row per entity of `ids`, in order: the entity and its feature vector.
    pub fn feature_batch(&self, ids: &[EntityId]) -> Result<RecordBatch, WindowError> {
        let width = self.spec.len();
        let mut columns: Vec<Vec<f32>> = vec![Vec::with_capacity(ids.len()); width];
        let mut row = vec![0.0; width];
        let mut scratch = Scratch::new(self.len);
        for id in ids {
            let e = self
                .slot_of(id)
                .ok_or_else(|| WindowError::UnknownEntity(id.clone()))?;
            self.extract(e, &mut scratch, &mut row);
            for (col, &v) in columns.iter_mut().zip(&row) {
                col.push(v);
            }
        }
        let mut arrays: Vec<ArrayRef> = Vec::with_capacity(width + 1);
        arrays.push(entity_column(ids));
        arrays.extend(
            columns
                .into_iter()
                .map(|c| Arc::new(Float32Array::from(c)) as ArrayRef),
        );
        Ok(RecordBatch::try_new(self.feature_schema(), arrays)?)
    }

    /// One row per entity of `ids`, in order: the entity and, per tracked metric, its imputed
    /// window and observation mask.
    pub fn sequence_batch(&self, ids: &[EntityId]) -> Result<RecordBatch, WindowError> {
        let (l, m) = (self.len, self.columns.len());
        let mut values: Vec<Vec<f32>> = vec![Vec::with_capacity(ids.len() * l); m];
        let mut masks: Vec<Vec<f32>> = vec![Vec::with_capacity(ids.len() * l); m];
        let mut scratch = Scratch::new(l);
        for id in ids {
            let e = self
                .slot_of(id)
                .ok_or_else(|| WindowError::UnknownEntity(id.clone()))?;
            for c in 0..m {
                self.imputed_series(e, c, &mut scratch);
                values[c].extend(scratch.imputed.iter().map(|&v| to_f32(v)));
                masks[c].extend(scratch.obs.iter().map(|&o| f32::from(u8::from(o))));
            }
        }
        let item = item_field();
        let list = |v: Vec<f32>| -> Result<ArrayRef, WindowError> {
            let values = Arc::new(Float32Array::from(v)) as ArrayRef;
            Ok(Arc::new(FixedSizeListArray::try_new(
                item.clone(),
                l as i32,
                values,
                None,
            )?))
        };
        let mut arrays: Vec<ArrayRef> = Vec::with_capacity(2 * m + 1);
        arrays.push(entity_column(ids));
        for (v, k) in values.into_iter().zip(masks) {
            arrays.push(list(v)?);
            arrays.push(list(k)?);
        }
        Ok(RecordBatch::try_new(self.sequence_schema(), arrays)?)
    }
}

fn entity_column(ids: &[EntityId]) -> ArrayRef {
    Arc::new(StringArray::from_iter_values(
        ids.iter().map(EntityId::as_str),
    ))
}

/// The schemas of a store's batches, built once.
#[derive(Debug)]
pub(crate) struct Schemas {
    features: SchemaRef,
    sequences: SchemaRef,
}

impl Schemas {
    pub(crate) fn new(spec: &FeatureSpec) -> Self {
        let entity = Field::new(ENTITY_COLUMN, DataType::Utf8, false);
        let mut fields = vec![entity.clone()];
        fields.extend(
            spec.names
                .iter()
                .map(|n| Field::new(n, DataType::Float32, false)),
        );
        let features = Arc::new(Schema::new(fields));

        let list = DataType::FixedSizeList(item_field(), spec.length as i32);
        let mut fields = vec![entity];
        for m in &spec.metrics {
            fields.push(Field::new(m, list.clone(), false));
            fields.push(Field::new(format!("{m}{MASK_SUFFIX}"), list.clone(), false));
        }
        let sequences = Arc::new(Schema::new(fields));
        Schemas {
            features,
            sequences,
        }
    }
}

fn item_field() -> FieldRef {
    Arc::new(Field::new("item", DataType::Float32, false))
}
