//! Index layout: one strict template per read model, versioned indices
//! (`{prefix}-{model}-v{n}`) and a stable alias per model (`{prefix}-{model}`)
//! that every reader and writer uses. A rebuild fills `v{n+1}` and moves the
//! alias in one atomic `_aliases` call.

use serde_json::{json, Value};

/// A read model with its own index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Model {
    CartDetail,
    CartSummary,
    SalesLines,
    CommandStatus,
}

/// The models folded from events, which a rebuild replays. Command status
/// is not among them: rejected commands leave no event behind.
pub const EVENT_MODELS: [Model; 3] = [Model::CartDetail, Model::CartSummary, Model::SalesLines];

pub(crate) const ALL_MODELS: [Model; 4] = [
    Model::CartDetail,
    Model::CartSummary,
    Model::SalesLines,
    Model::CommandStatus,
];

impl Model {
    pub fn name(self) -> &'static str {
        match self {
            Model::CartDetail => "cart-detail",
            Model::CartSummary => "cart-summary",
            Model::SalesLines => "sales-lines",
            Model::CommandStatus => "command-status",
        }
    }

    /// The template as committed in `infra/elasticsearch/`.
    pub fn template_file(self) -> &'static str {
        match self {
            Model::CartDetail => include_str!("../../../infra/elasticsearch/cart-detail.json"),
            Model::CartSummary => include_str!("../../../infra/elasticsearch/cart-summary.json"),
            Model::SalesLines => include_str!("../../../infra/elasticsearch/sales-lines.json"),
            Model::CommandStatus => {
                include_str!("../../../infra/elasticsearch/command-status.json")
            }
        }
    }
}

/// Names of one deployment's indices, from its prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Layout {
    pub prefix: String,
}

impl Layout {
    pub fn alias(&self, model: Model) -> String {
        format!("{}-{}", self.prefix, model.name())
    }

    pub fn index(&self, model: Model, generation: u32) -> String {
        format!("{}-{}-v{generation}", self.prefix, model.name())
    }

    /// The generation of `index` if it is one of `model`'s.
    pub fn generation_of(&self, model: Model, index: &str) -> Option<u32> {
        index
            .strip_prefix(&format!("{}-v", self.alias(model)))
            .and_then(|g| g.parse().ok())
    }

    /// The committed template with this prefix's pattern and, if given,
    /// shard and replica counts and refresh interval.
    pub fn template(
        &self,
        model: Model,
        shards: Option<u32>,
        replicas: Option<u32>,
        refresh_interval: Option<&str>,
    ) -> Result<Value, serde_json::Error> {
        let mut template: Value = serde_json::from_str(model.template_file())?;
        template["index_patterns"] = json!([format!("{}-v*", self.alias(model))]);
        let settings = &mut template["template"]["settings"];
        if let Some(shards) = shards {
            settings["number_of_shards"] = json!(shards);
        }
        if let Some(replicas) = replicas {
            settings["number_of_replicas"] = json!(replicas);
        }
        if let Some(interval) = refresh_interval {
            settings["refresh_interval"] = json!(interval);
        }
        Ok(template)
    }

    /// The rebuild's progress record.
    pub fn rebuild_state_index(&self) -> String {
        format!("{}-rebuild-state", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_index_name_gives_back_its_generation() {
        let layout = Layout {
            prefix: "t1".into(),
        };
        let index = layout.index(Model::CartDetail, 12);
        assert_eq!(index, "t1-cart-detail-v12");
        assert_eq!(layout.generation_of(Model::CartDetail, &index), Some(12));
        assert_eq!(layout.generation_of(Model::CartSummary, &index), None);
    }

    #[test]
    fn templates_match_only_their_models_versioned_indices() {
        let layout = Layout {
            prefix: "t1".into(),
        };
        for model in ALL_MODELS {
            let t = layout
                .template(model, Some(1), Some(0), Some("100ms"))
                .expect("template");
            assert_eq!(
                t["index_patterns"],
                json!([format!("t1-{}-v*", model.name())])
            );
            assert_eq!(t["template"]["mappings"]["dynamic"], "strict");
            assert_eq!(t["template"]["settings"]["number_of_replicas"], 0);
            assert_eq!(t["template"]["settings"]["refresh_interval"], "100ms");
        }
    }
}
