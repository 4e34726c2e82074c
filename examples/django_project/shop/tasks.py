"""Tasks that use Django: its settings and its ORM."""

import socket

from celery import shared_task
from django.conf import settings

from .models import Order


@shared_task(bind=True)
def record_order(self, item: str) -> dict:
    """Store an order (the ORM, SQLite in the workers' state directory) and say where it ran."""
    order = Order.objects.create(item=item)
    return {
        "id": order.id,
        "orders": Order.objects.count(),
        "database": str(settings.DATABASES["default"]["NAME"]),
        "settings": settings.SETTINGS_MODULE,
        "worker": self.request.hostname,
        "host": socket.gethostname(),
        "queue": (self.request.delivery_info or {}).get("routing_key"),
    }
