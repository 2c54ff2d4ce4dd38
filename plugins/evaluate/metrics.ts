/** Evaluation metrics. Pure functions over plain arrays. */

export function regressionMetrics(y: ArrayLike<number>, p: ArrayLike<number>): { rmse: number; mae: number; r2: number; mape: number } {
  const n = y.length;
  let se = 0;
  let ae = 0;
  let ape = 0;
  let apeN = 0;
  let mean = 0;
  for (let i = 0; i < n; i++) mean += y[i]! / n;
  let ss = 0;
  for (let i = 0; i < n; i++) {
    const e = y[i]! - p[i]!;
    se += e * e;
    ae += Math.abs(e);
    ss += (y[i]! - mean) ** 2;
    if (y[i] !== 0) {
      ape += Math.abs(e / y[i]!);
      apeN++;
    }
  }
  return { rmse: Math.sqrt(se / n), mae: ae / n, r2: ss === 0 ? 0 : 1 - se / ss, mape: apeN ? ape / apeN : 0 };
}

/** ROC AUC of scores for a binary 0/1 truth, by ranks (ties get their average rank). */
export function rocAuc(truth: ArrayLike<number>, score: ArrayLike<number>): number {
  const idx = Array.from({ length: truth.length }, (_, i) => i).sort((a, b) => score[a]! - score[b]!);
  const rank = new Float64Array(truth.length);
  for (let i = 0; i < idx.length;) {
    let j = i;
    while (j + 1 < idx.length && score[idx[j + 1]!] === score[idx[i]!]) j++;
    for (let k = i; k <= j; k++) rank[idx[k]!] = (i + j) / 2 + 1;
    i = j + 1;
  }
  let pos = 0;
  let sum = 0;
  for (let i = 0; i < truth.length; i++) {
    if (truth[i] === 1) {
      pos++;
      sum += rank[i]!;
    }
  }
  const neg = truth.length - pos;
  return pos === 0 || neg === 0 ? NaN : (sum - (pos * (pos + 1)) / 2) / (pos * neg);
}

/**
 * Classification metrics from class-index truth and per-class probabilities (row-major, k columns;
 * k = 1 means binary with P(class 1)). Precision, recall and F1 are for class 1 when binary, macro
 * averages otherwise; ROC AUC likewise (one-vs-rest macro).
 */
export function classificationMetrics(
  truth: ArrayLike<number>,
  prob: ArrayLike<number>,
  k: number,
): { accuracy: number; precision: number; recall: number; f1: number; rocAuc: number; logLoss: number } {
  const n = truth.length;
  const classes = k === 1 ? 2 : k;
  const p = (i: number, c: number): number => (k === 1 ? (c === 1 ? prob[i]! : 1 - prob[i]!) : prob[i * k + c]!);
  const pred = Array.from({ length: n }, (_, i) => {
    let best = 0;
    for (let c = 1; c < classes; c++) if (p(i, c) > p(i, best)) best = c;
    return best;
  });
  let correct = 0;
  let logLoss = 0;
  for (let i = 0; i < n; i++) {
    if (pred[i] === truth[i]) correct++;
    logLoss -= Math.log(Math.min(1 - 1e-15, Math.max(1e-15, p(i, truth[i]!))));
  }
  const perClass = (c: number): { precision: number; recall: number; f1: number; auc: number } => {
    let tp = 0;
    let fp = 0;
    let fn = 0;
    for (let i = 0; i < n; i++) {
      if (pred[i] === c && truth[i] === c) tp++;
      else if (pred[i] === c) fp++;
      else if (truth[i] === c) fn++;
    }
    const precision = tp + fp ? tp / (tp + fp) : 0;
    const recall = tp + fn ? tp / (tp + fn) : 0;
    const f1 = precision + recall ? (2 * precision * recall) / (precision + recall) : 0;
    const auc = rocAuc(
      Array.from(truth, (t) => (t === c ? 1 : 0)),
      Array.from({ length: n }, (_, i) => p(i, c)),
    );
    return { precision, recall, f1, auc };
  };
  const stats = classes === 2 ? [perClass(1)] : Array.from({ length: classes }, (_, c) => perClass(c));
  const avg = (f: (s: (typeof stats)[number]) => number): number => stats.reduce((a, s) => a + f(s), 0) / stats.length;
  return {
    accuracy: correct / n,
    precision: avg((s) => s.precision),
    recall: avg((s) => s.recall),
    f1: avg((s) => s.f1),
    rocAuc: avg((s) => s.auc),
    logLoss: logLoss / n,
  };
}
