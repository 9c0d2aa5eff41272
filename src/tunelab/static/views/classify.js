// The playground's view of a classifier (single-label, multi-label, regression): a text, an optional
// second text of a pair, and the label (or label set, or score) with every label's probability.
window.tunelabView = {
  build(box, info) {
    box.innerHTML = `<label for="text">Text</label>
      <textarea id="text" placeholder="Type a sentence">A gripping, beautifully acted film.</textarea>
      <label for="pair">Second text of a pair (optional)</label>
      <input type="text" id="pair" placeholder="Only for sentence-pair models">`;
  },
  body() {
    const body = {text: $("text").value};
    if ($("pair").value.trim()) body.text_pair = $("pair").value;
    return body;
  },
  attention() { return this.body(); },
  show(p) {
    let chosen, probabilities = Object.entries(p.probabilities);
    if (p.labels) {
      // Multi-label: the set of labels over their thresholds, every label's probability, highest first.
      chosen = p.labels;
      $("label").textContent = chosen.length ? chosen.join(", ") : "no label";
      $("score").textContent = `(${chosen.length} of ${probabilities.length} labels over their thresholds)`;
      probabilities.sort((a, b) => b[1] - a[1]);
    } else {
      chosen = [p.label];
      $("label").textContent = p.label === null ? p.score.toFixed(3) : p.label;
      $("score").textContent = p.label === null ? "(score)" : `(${(100 * p.score).toFixed(1)}%)`;
    }
    showBars(probabilities, chosen);
  },
};
