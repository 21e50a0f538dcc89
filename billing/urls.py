from django.urls import path

from billing import views

app_name = "billing"

urlpatterns = [
    path("billing/invoices/", views.invoice_list, name="invoice-list"),
    path("billing/preferences/", views.preferences, name="preferences"),
    path("billing/invoices/<uuid:invoice_id>/", views.invoice_detail, name="invoice-detail"),
    path("billing/invoices/<uuid:invoice_id>/pdf/", views.invoice_pdf, name="invoice-pdf"),
    path("billing/invoices/<uuid:invoice_id>/pay/", views.invoice_pay, name="invoice-pay"),
    path("billing/invoices/<uuid:invoice_id>/paid/", views.invoice_paid, name="invoice-paid"),
    path("billing/earnings/", views.earnings, name="earnings"),
    path("billing/ledger/", views.ledger, name="ledger"),
    path("billing/reconciliation/", views.reconciliation, name="reconciliation"),
    path("billing/stripe/webhook/", views.stripe_webhook, name="stripe-webhook"),
]
