"""``ping``: GitHub checks the webhook URL when the App is set up."""

from github_app.webhooks import Delivery, Outcome, router


@router.register("ping")
def on_ping(delivery: Delivery) -> Outcome:
    """Respond to GitHub's ping so the App's settings show the webhook works."""
    return Outcome(200, "pong", "The app received the ping.")
