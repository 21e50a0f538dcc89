// Suanli pay page: mounts Stripe's card Element, confirms the PaymentIntent, shows progress and errors
// beside the field, and on success goes to the return URL. Framework-free, no build step.
//
// Load Stripe.js first (settings.STRIPE_JS_URL: https://js.stripe.com/v3/ in production, the local fake
// <STRIPE_API_BASE>/js.stripe.com/v3/ in development and tests) as a classic script, then this file:
//
//   <script src="{{ stripe_js_url }}"></script>            (no async/module: the fake reads currentScript)
//   <script src="{% static 'billing/pay.js' %}" defer></script>
//
// Markup (one or more per page). Every message is translated by the template ({% translate %}):
//
//   <form data-stripe-pay
//         data-publishable-key="pk_..."                    settings.STRIPE_PUBLISHABLE_KEY           (required)
//         data-client-secret="pi_..._secret_..."           PaymentIntent.client_secret               (required)
//         data-return-url="/billing/invoices/7/paid/"      where to go after success; "?payment_intent=pi_..."
//                                                          is appended (the view re-reads the intent from
//                                                          Stripe: never trust the browser)           (required)
//         data-locale="zh"                                 Stripe's locale for its own messages (zh, en, auto)
//         data-msg-processing="正在付款…"                    shown while confirming
//         data-msg-succeeded="付款成功，正在跳转…"             shown before navigating
//         data-msg-failed="付款未完成，请重试。"              when Stripe gives no message
//         data-msg-unavailable="支付服务暂不可用。">          when Stripe.js did not load
//     <div data-stripe-card class="form-control"></div>    the card input is mounted here
//     <div data-stripe-error class="invalid-feedback d-block" role="alert" aria-live="assertive"></div>
//     <div data-stripe-status class="form-text" aria-live="polite"></div>
//     <button type="submit" class="btn btn-primary">
//       <span data-stripe-spinner class="spinner-border spinner-border-sm d-none" aria-hidden="true"></span>
//       付款
//     </button>
//   </form>
//
// The Payment Element is not used: localstripe's fake Stripe.js offers only the card Element, and the same
// code must run against both. Cards that ask for 3-D Secure open Stripe's (or the fake's) dialog.
(function () {
  "use strict";

  var DONE = ["succeeded", "processing", "requires_capture"];

  function init(form) {
    var data = form.dataset;
    var cardBox = form.querySelector("[data-stripe-card]");
    var errorBox = form.querySelector("[data-stripe-error]");
    var statusBox = form.querySelector("[data-stripe-status]");
    var spinner = form.querySelector("[data-stripe-spinner]");
    var buttons = form.querySelectorAll("button[type=submit], input[type=submit]");
    var busy = false;

    function showError(message) {
      if (errorBox) { errorBox.textContent = message || ""; }
      if (cardBox) {
        cardBox.classList.toggle("is-invalid", Boolean(message));
        cardBox.setAttribute("aria-invalid", message ? "true" : "false");
      }
    }

    function showStatus(message) {
      if (statusBox) { statusBox.textContent = message || ""; }
    }

    function setBusy(value) {
      busy = value;
      form.setAttribute("aria-busy", value ? "true" : "false");
      buttons.forEach(function (button) { button.disabled = value; });
      if (spinner) { spinner.classList.toggle("d-none", !value); }
    }

    if (typeof window.Stripe !== "function" || !data.publishableKey || !data.clientSecret || !cardBox) {
      showError(data.msgUnavailable || "Payment is unavailable.");
      buttons.forEach(function (button) { button.disabled = true; });
      return;
    }

    var stripe = window.Stripe(data.publishableKey, { locale: data.locale || "auto" });
    var card = stripe.elements({ locale: data.locale || "auto" }).create("card", { hidePostalCode: true });
    card.mount(cardBox);
    card.on("change", function (event) {
      // Stripe passes {error, complete}; localstripe's fake passes nothing.
      showError(event && event.error ? event.error.message : "");
    });

    form.addEventListener("submit", function (event) {
      event.preventDefault();
      if (busy) { return; }  // one confirmation at a time; the server's idempotency key covers the rest
      setBusy(true);
      showError("");
      showStatus(data.msgProcessing || "");
      stripe.confirmCardPayment(data.clientSecret, { payment_method: { card: card } }).then(function (result) {
        var intent = result && result.paymentIntent;
        if (result && result.error) {
          var error = result.error;
          var alreadyPaid = error.payment_intent && DONE.indexOf(error.payment_intent.status) >= 0;
          if (!alreadyPaid) {
            showStatus("");
            showError(error.message || data.msgFailed || "");
            setBusy(false);
            return;
          }
          intent = error.payment_intent;  // confirmed in another tab or by an earlier click
        }
        if (intent && DONE.indexOf(intent.status) >= 0) {
          showStatus(data.msgSucceeded || "");
          var url = new URL(data.returnUrl || window.location.href, window.location.href);
          url.searchParams.set("payment_intent", intent.id);
          window.location.assign(url.toString());
          return;
        }
        showStatus("");
        showError(data.msgFailed || "");
        setBusy(false);
      }, function (error) {
        showStatus("");
        showError((error && error.message) || data.msgFailed || "");
        setBusy(false);
      });
    });
  }

  function start() {
    document.querySelectorAll("form[data-stripe-pay]").forEach(init);
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
