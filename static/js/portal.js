// Suanli portal behaviour: small, dependency-free additions to Bootstrap and htmx.
(function () {
  "use strict";

  // Send Django's CSRF token with every htmx request (the token is also in <body hx-headers>; this covers
  // requests triggered from elements outside it, e.g. after a swap replaced the body's attributes).
  document.addEventListener("htmx:configRequest", function (event) {
    var token = document.querySelector("meta[name=csrf-token]");
    if (token) { event.detail.headers["X-CSRFToken"] = token.content; }
  });

  // Live checks (<input data-live-check hx-get=... hx-target="#x-feedback">): the server's answer carries
  // data-state="valid|invalid|typing"; mirror it on the input and hide the errors of the last submit.
  document.addEventListener("htmx:afterSettle", function (event) {
    var input = event.detail.requestConfig && event.detail.requestConfig.elt;
    if (!input || !input.hasAttribute("data-live-check")) { return; }
    var box = document.querySelector(input.getAttribute("hx-target"));
    var state = box ? box.getAttribute("data-state") : "";
    input.classList.toggle("is-invalid", state === "invalid");
    input.classList.toggle("is-valid", state === "valid");
    input.setAttribute("aria-invalid", state === "invalid" ? "true" : "false");
    var group = input.closest("[id^='field-']");
    if (group) {
      group.querySelectorAll(":scope > [data-field-error]").forEach(function (old) { old.hidden = true; });
    }
  });

  // Copy-to-clipboard buttons: <button data-copy="#selector" data-copied-label="Copied">.
  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-copy]");
    if (!button) { return; }
    var source = document.querySelector(button.dataset.copy);
    if (!source) { return; }
    var text = source.textContent.trim();
    var done = function () {
      var label = button.querySelector("span");
      if (label && button.dataset.copiedLabel) { label.textContent = button.dataset.copiedLabel; }
      var icon = button.querySelector(".bi");
      if (icon) { icon.className = "bi bi-clipboard-check"; }
    };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(done);
    } else {
      var range = document.createRange();
      range.selectNodeContents(source);
      var selection = window.getSelection();
      selection.removeAllRanges();
      selection.addRange(range);
      try { if (document.execCommand("copy")) { done(); } } catch (e) { /* the text stays selected */ }
    }
  });

  // Horizontally scrolling menus (settings on phones): bring the current entry into view.
  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll(".settings-nav .active").forEach(function (link) {
      var menu = link.closest(".settings-nav");
      if (menu.scrollWidth > menu.clientWidth) {
        menu.scrollLeft = link.offsetLeft - (menu.clientWidth - link.offsetWidth) / 2;
      }
    });
  });

  // The Content-Security-Policy allows no inline handlers or style attributes; these stand in for them.
  // <select data-autosubmit> submits its form when changed (was onchange="this.form.submit()").
  document.addEventListener("change", function (event) {
    var field = event.target;
    if (field.form && field.hasAttribute("data-autosubmit")) { field.form.requestSubmit(); }
  });
  // <div class="progress-bar" data-width="37.5"> gets width 37.5 % (set through the CSSOM, which CSP allows),
  // on the page and in every fragment htmx swaps in.
  function applyWidths(root) {
    var boxes = root.querySelectorAll ? root.querySelectorAll("[data-width]") : [];
    var all = root.matches && root.matches("[data-width]") ? [root].concat(Array.prototype.slice.call(boxes)) : boxes;
    Array.prototype.forEach.call(all, function (box) {
      var value = parseFloat(box.getAttribute("data-width"));
      if (isFinite(value)) { box.style.width = Math.min(100, Math.max(0, value)) + "%"; }
    });
  }
  if (window.htmx) { window.htmx.onLoad(applyWidths); } else {
    document.addEventListener("DOMContentLoaded", function () { applyWidths(document); });
  }

  // Forms that need a confirmation: <form data-confirm="Really?">.
  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (form.dataset && form.dataset.confirm && !window.confirm(form.dataset.confirm)) {
      event.preventDefault();
    }
  });
})();
