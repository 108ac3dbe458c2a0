// Unit tests of the policy's logic, run natively by Node (`node --test policies/thrifty/test`),
// the way `cargo test` runs the Rust policies' unit tests.
import { test } from "node:test";
import assert from "node:assert/strict";
import { rank, ranker, qualityPoints } from "../src/thrifty.js";

const requirements = (extra = {}) => ({
  lowCost: false,
  highQuality: false,
  lowLatency: false,
  maxCostUsd: undefined,
  maxLatencyMs: undefined,
  ...extra,
});
const features = (task = "chat", extra = {}) => ({
  task,
  taskConfidence: 1,
  estimatedInputTokens: 1000n,
  maxOutputTokens: undefined,
  requirements: requirements(extra),
  needsTools: false,
  needsVision: false,
  needsJson: false,
  apiKeyId: undefined,
  requestedModel: undefined,
});
const candidate = (id, quality, cost, extra = {}) => ({
  id,
  provider: "test",
  inputPricePerMtok: 1,
  cachedInputPricePerMtok: 0.1,
  outputPricePerMtok: 4,
  estimatedCostUsd: cost,
  quality,
  specialties: [],
  contextWindow: 128000n,
  ewmaLatencyMs: undefined,
  ewmaTtftMs: undefined,
  successRate: 1,
  circuit: "closed",
  rateLimitHeadroom: 1,
  ...extra,
});

/** Ranks and checks the contract: every candidate once, finite scores that never rise. */
function ranked(f, candidates) {
  const ranking = rank(f, candidates);
  const want = [...new Set(candidates.map((c) => c.id))].sort();
  assert.deepEqual(ranking.ranked.map((s) => s.id).sort(), want);
  for (const s of ranking.ranked) assert.ok(Number.isFinite(s.score), `${s.id}: ${s.score}`);
  for (let i = 1; i < ranking.ranked.length; i++) {
    assert.ok(ranking.ranked[i - 1].score >= ranking.ranked[i].score);
  }
  return ranking;
}
const ids = (ranking) => ranking.ranked.map((s) => s.id);

test("describes itself", () => {
  assert.equal(ranker.describe().name, "thrifty");
});

test("the cheapest model within the band of the best goes first", () => {
  const ranking = ranked(features(), [
    candidate("frontier", 0.95, 0.02),
    candidate("near", 0.91, 0.004),
    candidate("mini", 0.8, 0.0004),
  ]);
  assert.deepEqual(ids(ranking), ["near", "frontier", "mini"]);
  assert.equal(ranking.reason, "cheapest within 0.05 of the best quality (0.95): near ($0.004000)");
});

test("low-cost widens the band and high-quality closes it", () => {
  const candidates = [
    candidate("frontier", 0.95, 0.02),
    candidate("near", 0.91, 0.004),
    candidate("good", 0.86, 0.001),
  ];
  assert.deepEqual(ids(ranked(features("chat", { lowCost: true }), candidates)), [
    "good",
    "near",
    "frontier",
  ]);
  assert.deepEqual(ids(ranked(features("chat", { highQuality: true }), candidates)), [
    "frontier",
    "near",
    "good",
  ]);
});

test("a band edge reached through the specialist bonus is inside the band", () => {
  // 0.85 + 0.05 is 0.90000002 in f32 terms; basis points make it exactly 0.90.
  const ranking = ranked(features("code"), [
    candidate("frontier", 0.95, 0.02),
    candidate("coder", 0.85, 0.001, { specialties: ["code"] }),
  ]);
  assert.deepEqual(ids(ranking), ["coder", "frontier"]);
  assert.equal(qualityPoints(0.85) + qualityPoints(0.05), qualityPoints(0.9));
});

test("healthy models before probes and failing ones", () => {
  const ranking = ranked(features(), [
    candidate("probe", 0.99, 0.0001, { circuit: "half-open" }),
    candidate("failing", 0.99, 0.0001, { successRate: 0.2 }),
    candidate("healthy", 0.6, 0.01),
  ]);
  assert.deepEqual(ids(ranking), ["healthy", "probe", "failing"]);
});

test("unusable numbers neither crash nor win", () => {
  const ranking = ranked(features(), [
    candidate("nan", NaN, NaN, { successRate: NaN }),
    candidate("inf", 0.9, Infinity),
    candidate("ok", 0.9, 0.001),
  ]);
  assert.deepEqual(ids(ranking), ["ok", "inf", "nan"]);
});

test("duplicates are ranked once and empty input says so", () => {
  const ranking = ranked(features(), [
    candidate("twin", 0.7, 0.001),
    candidate("twin", 0.9, 0.001),
    candidate("other", 0.8, 0.001),
  ]);
  assert.deepEqual(ids(ranking), ["twin", "other"]);
  assert.deepEqual(rank(features(), []), { ranked: [], reason: "no candidates" });
});
