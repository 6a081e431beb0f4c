"""Who asks for what: the teams registry, verified identities and the platform's attestations."""
