// Validation as the user types for supply forms: a wrapper with hx-post="…/validate/" answers with one
// out-of-band box per field (<div id="fb-NAME" data-live-for="NAME" data-state="valid|invalid|">). Mirror
// each box's state on its input, and hide the errors of the last submit once the user changes the field.
(function () {
  "use strict";
  function apply(box) {
    var form = box.closest("form");
    if (!form) { return; }
    var name = box.dataset.liveFor;
    var state = box.dataset.state;
    form.querySelectorAll("[name='" + name + "']").forEach(function (input) {
      if (input.type === "checkbox" || input.type === "radio" || input.type === "hidden") { return; }
      input.classList.toggle("is-invalid", state === "invalid");
      input.classList.toggle("is-valid", state === "valid");
      input.setAttribute("aria-invalid", state === "invalid" ? "true" : "false");
    });
    var group = document.getElementById("field-" + name);
    if (group && state) {
      group.querySelectorAll(":scope > [data-field-error]").forEach(function (old) { old.hidden = true; });
    }
  }
  document.addEventListener("htmx:load", function (event) {
    var box = event.target;
    if (box && box.dataset && box.dataset.liveFor) { apply(box); }
  });
  document.addEventListener("htmx:afterSettle", function (event) {
    var scope = event.target && event.target.closest ? event.target.closest("form") : null;
    if (scope) { scope.querySelectorAll("[data-live-for]").forEach(apply); }
  });
})();
