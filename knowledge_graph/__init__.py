"""Chinese medical knowledge graph and its QA assistant."""
