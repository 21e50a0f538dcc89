// Send Django's CSRF token with every HTMX request (the token is in <body hx-headers>; this covers
// requests triggered from elements outside it, e.g. after a swap replaced the body's attributes).
document.addEventListener("htmx:configRequest", function (event) {
  var token = document.querySelector("meta[name=csrf-token]");
  if (token) { event.detail.headers["X-CSRFToken"] = token.content; }
});
// Copy-to-clipboard buttons: <button data-copy="#selector">.
document.addEventListener("click", function (event) {
  var button = event.target.closest("[data-copy]");
  if (!button) { return; }
  var source = document.querySelector(button.dataset.copy);
  if (source && navigator.clipboard) {
    navigator.clipboard.writeText(source.textContent.trim());
    button.classList.add("btn-success");
  }
});
