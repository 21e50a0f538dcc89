"""Run the green allocation of a closed month now (on demand), or every due month."""

from __future__ import annotations

from datetime import date

from django.core.management.base import BaseCommand, CommandParser

from green import services


class Command(BaseCommand):
    help = "Allocate green certificates to a closed month's metered lease-hours (--month YYYY-MM), or all due months."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--month", help="YYYY-MM; runs it again even if it completed before")

    def handle(self, *args: object, month: str | None = None, **options: object) -> None:
        if month:
            period = services.allocation_month_run(month=date.fromisoformat(f"{month}-01"), force=True)
            self.stdout.write(
                f"{month}: {period.lease_hours} lease-hours, {period.allocated_wh} of {period.facility_wh} Wh green"
            )
        else:
            done = services.allocation_due()
            self.stdout.write("allocated: " + (", ".join(f"{m:%Y-%m}" for m in done) or "nothing due"))
