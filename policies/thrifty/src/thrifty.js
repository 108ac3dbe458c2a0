// The `thrifty` routing policy, written in JavaScript and built into a component with jco
// (`jco componentize --backend quickjs`; see build notes in README.md).
//
// "Good enough, then cheapest": a model whose quality is within a band of the best healthy
// candidate's is as good as the best for this request, so the cheapest of those goes first; the
// rest follow, best quality first. The band is 0.05 on the catalog's 0..1 scale, 0.10 when the
// caller asks for `low-cost` and 0 when it asks for `high-quality` (then only the best models
// are "good enough", cheapest first among equals). Specialists in the request's task get the
// same 0.05 bonus the Rust policies give.
//
// Health comes first: closed circuits before half-open ones (which only probes should reach),
// and both before models failing more than half their recent calls. Nothing is skipped: the
// host has already removed candidates that cannot serve the request.
//
// Qualities are compared in whole basis points, like the Rust policies: the catalog's f32
// qualities arrive with noise (0.85 + 0.05 is 0.90000002), which would turn ties into wins.

const QUALITY_POINTS = 10000;
const SPECIALTY_BONUS = 0.05;
const BAND = 0.05;
const LOW_COST_BAND = 0.1;
const MIN_SUCCESS_RATE = 0.5;

/** A quality in basis points, clamped to 0..1; NaN counts as 0. */
export function qualityPoints(quality) {
  const q = Number.isNaN(quality) ? 0 : Math.min(1, Math.max(0, quality));
  return Math.round(q * QUALITY_POINTS);
}

/** The estimated cost when it is usable (finite, not negative), else null. */
export function knownCost(cost) {
  return Number.isFinite(cost) && cost >= 0 ? cost + 0 : null;
}

/** Closed 0, half-open 1, open 2; plus 3 for a model failing more than half its calls. */
export function tier(candidate) {
  const circuit = { closed: 0, "half-open": 1, open: 2 }[candidate.circuit] ?? 2;
  // `<` is false for NaN, which therefore is not demoted: demoting a model takes evidence.
  const failing = candidate.successRate < MIN_SUCCESS_RATE ? 1 : 0;
  return failing * 3 + circuit;
}

export function band(requirements) {
  if (requirements.highQuality) return 0;
  if (requirements.lowCost) return LOW_COST_BAND;
  return BAND;
}

function compareCost(a, b) {
  if (a === null && b === null) return 0;
  if (a === null) return 1;
  if (b === null) return -1;
  return a - b;
}

/** Ranks candidates: the `rank` export of the `ranker` interface. */
export function rank(features, candidates) {
  if (candidates.length === 0) {
    return { ranked: [], reason: "no candidates" };
  }
  const entries = candidates.map((c) => {
    const specialist = (c.specialties ?? []).includes(features.task);
    return {
      id: c.id,
      tier: tier(c),
      quality: qualityPoints(c.quality) + (specialist ? qualityPoints(SPECIALTY_BONUS) : 0),
      cost: knownCost(c.estimatedCostUsd),
    };
  });
  const bestTier = Math.min(...entries.map((e) => e.tier));
  const bestQuality = Math.max(
    ...entries.filter((e) => e.tier === bestTier).map((e) => e.quality),
  );
  const width = band(features.requirements);
  const floor = bestQuality - qualityPoints(width);
  for (const e of entries) {
    e.goodEnough = e.quality >= floor;
  }
  entries.sort(
    (a, b) =>
      a.tier - b.tier ||
      Number(b.goodEnough) - Number(a.goodEnough) ||
      (a.goodEnough ? compareCost(a.cost, b.cost) : b.quality - a.quality) ||
      (a.id < b.id ? -1 : a.id > b.id ? 1 : 0),
  );
  // The host rejects a ranking that names a model twice; keep each id's best place.
  const seen = new Set();
  const unique = entries.filter((e) => !seen.has(e.id) && seen.add(e.id));
  const best = unique[0];
  const cost = best.cost === null ? "cost unknown" : `$${best.cost.toFixed(6)}`;
  return {
    ranked: unique.map((e, i) => ({ id: e.id, score: unique.length - i })),
    reason:
      `cheapest within ${width.toFixed(2)} of the best quality ` +
      `(${(bestQuality / QUALITY_POINTS).toFixed(2)}): ${best.id} (${cost})`,
  };
}

/** The `ranker` interface of the `policy` world. */
export const ranker = {
  describe() {
    return {
      name: "thrifty",
      description: "cheapest model within a quality band of the best (JavaScript)",
    };
  },
  rank,
};
