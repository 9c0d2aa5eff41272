// The playground's view of a question-answering checkpoint: a context and a question, and the answer
// highlighted in the context (or "no answer").
window.tunelabView = {
  build(box, info) {
    box.innerHTML = `<label for="context">Context</label>
      <textarea id="context" style="height: 8rem">Alice visited Paris in the spring, then flew to Berlin.</textarea>
      <label for="question">Question</label>
      <input type="text" id="question" value="Where did Alice go first?">`;
  },
  body() { return {question: $("question").value, context: $("context").value}; },
  attention() { return {text: $("question").value, text_pair: $("context").value}; },
  show(p, body) {
    $("bars").innerHTML = "";
    if (p.start === null) {
      $("label").textContent = "no answer";
      $("score").textContent = `(${(100 * p.score).toFixed(1)}% that there is none)`;
      $("entities").textContent = body.context;
      return;
    }
    $("label").textContent = p.answer;
    $("score").textContent = `(${(100 * p.score).toFixed(1)}%, characters ${p.start}-${p.end})`;
    highlight($("entities"), body.context, [{start: p.start, end: p.end, title: "answer", className: "answer"}]);
  },
};
