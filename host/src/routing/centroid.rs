//! Nearest-centroid classification over sentence embeddings: each class is the normalised mean
//! of its examples' embeddings, and a prompt belongs to the class whose centroid is most
//! similar (cosine). Pure arithmetic; where the embeddings come from is the caller's business.

use crate::config::TaskClass;
use std::collections::BTreeMap;

/// Softmax temperature over cosine similarities. MiniLM similarities between a prompt and the
/// class centroids span roughly 0.1 to 0.7, so a lead of 0.05 should read as a clear but not
/// certain preference (e^1 ≈ 2.7 times the runner-up's weight).
const TEMPERATURE: f32 = 0.05;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CentroidError {
    #[error("no labelled embeddings to build centroids from")]
    Empty,
    #[error("embeddings have {found} dimensions, expected {expected}")]
    Dimensions { expected: usize, found: usize },
    #[error("the examples of '{0}' average to a zero vector")]
    Degenerate(&'static str),
}

/// A classification with how sure it is.
#[derive(Debug, Clone, PartialEq)]
pub struct Prediction {
    pub class: TaskClass,
    /// The winner's softmax weight over all classes, in 0..1.
    pub confidence: f32,
    /// Cosine similarity to every centroid, most similar first.
    pub similarities: Vec<(TaskClass, f32)>,
}

#[derive(Debug, Clone)]
pub struct Centroids {
    dimensions: usize,
    classes: Vec<(TaskClass, Vec<f32>)>,
}

impl Centroids {
    /// Averages the embeddings of each class and normalises the means.
    pub fn from_labelled<'a>(
        labelled: impl IntoIterator<Item = (TaskClass, &'a [f32])>,
    ) -> Result<Self, CentroidError> {
        let mut sums: BTreeMap<TaskClass, Vec<f32>> = BTreeMap::new();
        let mut dimensions = None;
        for (class, embedding) in labelled {
            let expected = *dimensions.get_or_insert(embedding.len());
            if embedding.len() != expected || expected == 0 {
                return Err(CentroidError::Dimensions {
                    expected,
                    found: embedding.len(),
                });
            }
            let sum = sums.entry(class).or_insert_with(|| vec![0.0; expected]);
            for (s, v) in sum.iter_mut().zip(embedding) {
                *s += v;
            }
        }
        let dimensions = dimensions.ok_or(CentroidError::Empty)?;
        let classes = sums
            .into_iter()
            .map(|(class, mut sum)| {
                let norm = sum.iter().map(|v| v * v).sum::<f32>().sqrt();
                if !(norm.is_finite() && norm > f32::EPSILON) {
                    return Err(CentroidError::Degenerate(class.as_str()));
                }
                sum.iter_mut().for_each(|v| *v /= norm);
                Ok((class, sum))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Centroids {
            dimensions,
            classes,
        })
    }

    pub fn classes(&self) -> impl Iterator<Item = TaskClass> + '_ {
        self.classes.iter().map(|(class, _)| *class)
    }

    /// The nearest class to a unit-length `embedding`; `None` if its size does not match.
    pub fn classify(&self, embedding: &[f32]) -> Option<Prediction> {
        if embedding.len() != self.dimensions {
            return None;
        }
        let similarities: Vec<(TaskClass, f32)> = self
            .classes
            .iter()
            .map(|(class, centroid)| (*class, dot(centroid, embedding)))
            .collect();
        if similarities.iter().any(|(_, s)| !s.is_finite()) {
            return None;
        }
        Prediction::from_scores(similarities)
    }
}

impl Prediction {
    /// The best of `scores` with its softmax weight; `None` when there are none.
    fn from_scores(mut scores: Vec<(TaskClass, f32)>) -> Option<Self> {
        scores.sort_by(|a, b| b.1.total_cmp(&a.1));
        let (class, best) = *scores.first()?;
        // Shifted by the best score so the exponentials cannot overflow.
        let total: f32 = scores
            .iter()
            .map(|(_, s)| ((s - best) / TEMPERATURE).exp())
            .sum();
        Some(Prediction {
            class,
            confidence: 1.0 / total,
            similarities: scores,
        })
    }

    /// The prediction again with `weight × share` added to each class's similarity, where
    /// `shares` is other evidence per class (e.g. keyword cue hits) summing to at most 1.
    pub fn with_evidence(self, shares: &[(TaskClass, f32)], weight: f32) -> Self {
        let scores = self
            .similarities
            .iter()
            .map(|(class, similarity)| {
                let share = shares
                    .iter()
                    .find(|(c, _)| c == class)
                    .map_or(0.0, |(_, share)| *share);
                (*class, similarity + weight * share)
            })
            .collect();
        Prediction::from_scores(scores).unwrap_or(self)
    }
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(v: &[f32]) -> Vec<f32> {
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.iter().map(|x| x / norm).collect()
    }

    fn three_classes() -> Centroids {
        let examples = [
            (TaskClass::Code, unit(&[1.0, 0.1, 0.0])),
            (TaskClass::Code, unit(&[1.0, -0.1, 0.0])),
            (TaskClass::Math, unit(&[0.0, 1.0, 0.1])),
            (TaskClass::Math, unit(&[0.1, 1.0, 0.0])),
            (TaskClass::Chat, unit(&[0.0, 0.0, 1.0])),
        ];
        Centroids::from_labelled(examples.iter().map(|(c, v)| (*c, v.as_slice()))).unwrap()
    }

    #[test]
    fn centroids_are_unit_length_means() {
        let centroids = three_classes();
        let code = &centroids.classes[0];
        assert_eq!(code.0, TaskClass::Code);
        // The two code examples cancel out on the second axis.
        assert!((code.1[0] - 1.0).abs() < 1e-6, "{:?}", code.1);
        assert!(code.1[1].abs() < 1e-6, "{:?}", code.1);
        assert_eq!(
            centroids.classes().collect::<Vec<_>>(),
            [TaskClass::Code, TaskClass::Math, TaskClass::Chat]
        );
    }

    #[test]
    fn picks_the_nearest_centroid_and_ranks_the_rest() {
        let centroids = three_classes();
        let prediction = centroids.classify(&unit(&[0.2, 0.9, 0.1])).unwrap();
        assert_eq!(prediction.class, TaskClass::Math);
        let order: Vec<TaskClass> = prediction.similarities.iter().map(|(c, _)| *c).collect();
        assert_eq!(order, [TaskClass::Math, TaskClass::Code, TaskClass::Chat]);
        assert!(prediction.confidence > 0.9, "{prediction:?}");
    }

    #[test]
    fn confidence_falls_as_the_margin_shrinks() {
        let centroids = three_classes();
        let clear = centroids.classify(&unit(&[1.0, 0.2, 0.0])).unwrap();
        let torn = centroids.classify(&unit(&[1.0, 0.95, 0.0])).unwrap();
        assert_eq!(clear.class, TaskClass::Code);
        assert_eq!(torn.class, TaskClass::Code);
        assert!(torn.confidence < clear.confidence, "{torn:?} vs {clear:?}");
        // Three classes: never below a uniform share, never above certainty.
        assert!(
            torn.confidence > 1.0 / 3.0 && torn.confidence < 0.7,
            "{torn:?}"
        );
        assert!(clear.confidence <= 1.0);
    }

    #[test]
    fn evidence_can_tip_a_close_call_but_not_a_clear_one() {
        let centroids = three_classes();
        let close = centroids.classify(&unit(&[1.0, 0.9, 0.0])).unwrap();
        assert_eq!(close.class, TaskClass::Code);
        let tipped = close.with_evidence(&[(TaskClass::Math, 1.0)], 0.1);
        assert_eq!(tipped.class, TaskClass::Math, "{tipped:?}");
        assert_eq!(tipped.similarities.len(), 3);

        let clear = centroids.classify(&unit(&[1.0, 0.1, 0.0])).unwrap();
        let kept = clear.clone().with_evidence(&[(TaskClass::Math, 1.0)], 0.1);
        assert_eq!(kept.class, TaskClass::Code);
        assert!(kept.confidence < clear.confidence, "{kept:?} vs {clear:?}");
    }

    #[test]
    fn mismatched_or_broken_input_is_refused() {
        let centroids = three_classes();
        assert_eq!(centroids.classify(&[1.0, 0.0]), None);
        assert_eq!(centroids.classify(&[f32::NAN, 0.0, 0.0]), None);
        let short = [0.0_f32; 2];
        let long = [0.0_f32; 3];
        assert_eq!(
            Centroids::from_labelled([(TaskClass::Code, &long[..]), (TaskClass::Math, &short[..])])
                .unwrap_err(),
            CentroidError::Dimensions {
                expected: 3,
                found: 2
            }
        );
        assert_eq!(
            Centroids::from_labelled(std::iter::empty()).unwrap_err(),
            CentroidError::Empty
        );
        assert_eq!(
            Centroids::from_labelled([(TaskClass::Chat, &long[..])]).unwrap_err(),
            CentroidError::Degenerate("chat")
        );
    }
}
