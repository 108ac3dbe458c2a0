//! `tasks.toml`: labelled example prompts per task class. The embedding classifier's centroids
//! are the mean embeddings of these examples, so the file is the classifier's training data.

use super::TaskClass;
use serde::Deserialize;
use std::collections::BTreeMap;

/// Fewer examples than this make a centroid that one odd phrasing drags around.
pub const MIN_EXAMPLES_PER_CLASS: usize = 3;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskExamples {
    /// Example prompts per class; every class must be present.
    pub examples: BTreeMap<TaskClass, Vec<String>>,
}

impl TaskExamples {
    /// Field-level problems as (field, problem) pairs.
    pub(super) fn problems(&self) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        for class in TaskClass::ALL {
            let field = format!("examples.{}", class.as_str());
            match self.examples.get(&class) {
                None => problems.push((
                    field,
                    "is missing: every task class needs example prompts".into(),
                )),
                Some(examples) => {
                    if examples.len() < MIN_EXAMPLES_PER_CLASS {
                        problems.push((
                            field.clone(),
                            format!(
                                "has {} examples; at least {MIN_EXAMPLES_PER_CLASS} are needed",
                                examples.len()
                            ),
                        ));
                    }
                    for (i, example) in examples.iter().enumerate() {
                        if example.trim().is_empty() {
                            problems.push((format!("{field}[{i}]"), "is empty".into()));
                        }
                    }
                }
            }
        }
        problems
    }

    /// Every example with its class, in a stable order.
    pub fn labelled(&self) -> impl Iterator<Item = (TaskClass, &str)> {
        self.examples
            .iter()
            .flat_map(|(class, examples)| examples.iter().map(move |e| (*class, e.as_str())))
    }
}
