"""The `Runner` resource: its model and status, its use cases (registration, token, managers, children), their
orchestration (`reconcile`), its deletion, and the pure logic and builders they use."""
