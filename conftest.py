"""Root of the test tree: shared fixtures come from the ``carnet_kit.testing`` plugin (see pyproject)."""
