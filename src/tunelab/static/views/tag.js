// The playground's view of a token classifier: a text, and its entities highlighted in place.
window.tunelabView = {
  build(box, info) {
    box.innerHTML = `<label for="text">Text</label>
      <textarea id="text" placeholder="Type a sentence">Alice visited Paris with Bob.</textarea>`;
  },
  body() { return {text: $("text").value}; },
  attention() { return this.body(); },
  show(p, body) {
    const n = p.entities.length;
    $("label").textContent = `${n} entit${n === 1 ? "y" : "ies"}`;
    $("score").textContent = "";
    $("bars").innerHTML = "";
    highlight($("entities"), body.text, p.entities.map((e) => ({start: e.start, end: e.end, type: e.type,
      title: `${e.type} ${(100 * e.score).toFixed(1)}%`, className: "entity"})));
  },
};
