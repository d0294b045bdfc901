"""``installation``: the App was installed, removed, suspended or changed."""

import structlog

from github_app.webhooks import Delivery, Outcome, router

logger = structlog.get_logger(__name__)


@router.register("installation")
def on_installation(delivery: Delivery) -> Outcome:
    """Log the change; installations are looked up on demand, so nothing is stored."""
    installation = delivery.payload.get("installation") or {}
    logger.info(
        "Installation changed",
        action=delivery.action,
        installation_id=installation.get("id"),
    )
    return Outcome(200, "noted", f"Installation {delivery.action or 'event'} noted.")
