// The playground's view of a multiple-choice checkpoint: a context, a question and the choices (one a line),
// and every choice's probability, the chosen one marked.
window.tunelabView = {
  build(box, info) {
    box.innerHTML = `<label for="context">Context (optional)</label>
      <textarea id="context">Alice put the kettle on.</textarea>
      <label for="question">Question (optional)</label>
      <input type="text" id="question" value="What does she do next?">
      <label for="choices">Choices, one a line</label>
      <textarea id="choices">She makes tea.\nShe goes swimming in it.</textarea>`;
  },
  body() {
    const choices = $("choices").value.split("\n").map((c) => c.trim()).filter((c) => c);
    return {context: $("context").value, question: $("question").value, choices};
  },
  attention() {
    const body = this.body();
    return {text: body.context || body.question || body.choices[0],
            text_pair: body.context ? `${body.question} ${body.choices[0] || ""}`.trim() : undefined};
  },
  show(p, body) {
    $("label").textContent = p.choice;
    $("score").textContent = `(choice ${String.fromCharCode(65 + p.index)}, ${(100 * p.score).toFixed(1)}%)`;
    $("entities").innerHTML = "";
    showBars(body.choices.map((c, i) => [`${String.fromCharCode(65 + i)}. ${c}`, p.probabilities[i]]),
             [`${String.fromCharCode(65 + p.index)}. ${p.choice}`]);
  },
};
