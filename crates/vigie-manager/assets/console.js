// The console works without JavaScript; this only adds conveniences.
document.addEventListener("DOMContentLoaded", () => {
  // "Select all" for bulk actions on alerts.
  const all = document.getElementById("select-all");
  if (all) {
    all.addEventListener("change", () => {
      document.querySelectorAll("input.pick").forEach((c) => { c.checked = all.checked; });
    });
  }
  // A rule file chosen from disk goes into the text area (nothing is sent
  // until the form is submitted).
  const file = document.getElementById("rule-file");
  const source = document.getElementById("source");
  if (file && source) {
    file.addEventListener("change", () => {
      const f = file.files && file.files[0];
      if (f) { f.text().then((t) => { source.value = t; }); }
    });
  }
});
