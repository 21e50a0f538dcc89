import time

from django.core.management.base import BaseCommand, CommandParser

from core.outbox import outbox_relay


class Command(BaseCommand):
    help = "Publish pending outbox messages to the Celery broker (once, or every --interval seconds)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--interval", type=float, default=0, help="repeat every N seconds (0: run once)")

    def handle(self, *args: object, interval: float, **options: object) -> None:
        while True:
            count = outbox_relay()
            self.stdout.write(f"published {count}")
            if not interval:
                return
            time.sleep(interval)
