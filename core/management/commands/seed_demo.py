"""Build the realistic, idempotent demo world used by `make run` (and print its logins)."""

from __future__ import annotations

import importlib

from django.core.management.base import BaseCommand, CommandParser

# Each app that adds to the demo exposes demo.seed(); they run in dependency order.
DEMO_MODULES = [
    "accounts.demo",
    "marketplace.demo",
    "marketplace.demo_tokens",
    "metering.demo",
    "vouchers.demo",
    "green.demo",
    "billing.demo",
]


class Command(BaseCommand):
    help = "Create the demo organisations, users and data (safe to run again), or print the demo logins."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--print-logins", action="store_true", help="only print the logins")
        parser.add_argument("--url", default="http://127.0.0.1:8000/")

    def handle(self, *args: object, print_logins: bool, url: str, **options: object) -> None:
        from accounts.demo import DEMO_PASSWORD

        if not print_logins:
            for name in DEMO_MODULES:
                importlib.import_module(name).seed()
            self.stdout.write(self.style.SUCCESS("demo data ready"))
            return
        # Every demo login, including those later apps' demos add (all use the .demo domain).
        from accounts.models import Membership

        logins = list(
            Membership.objects.filter(user__email__endswith=".demo")
            .select_related("user", "organization")
            .order_by("organization__kind", "user__email")
            .values_list("user__email", "organization__kind", "organization__name")
        )
        width = max((len(email) for email, _kind, _name in logins), default=20)
        self.stdout.write("")
        self.stdout.write(self.style.SUCCESS(f"Suanli is running at {url}"))
        self.stdout.write(f"Demo logins (password for all: {DEMO_PASSWORD}):")
        for email, kind, name in logins:
            self.stdout.write(f"  {email.ljust(width)}  {kind:<9} {name}")
        self.stdout.write(f"Staff admin: {url}admin/  (admin@suanli.demo)")
        self.stdout.write("Press Ctrl-C to stop web, worker and beat.")
