"""One module per GitHub event; importing a module registers its handler."""

from handlers import create, installation, ping, push

__all__ = ["create", "installation", "ping", "push"]
