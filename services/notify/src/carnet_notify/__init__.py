"""carnet_notify: how people hear about what happens in their space."""
