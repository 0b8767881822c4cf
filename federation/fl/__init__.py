"""Plain-Python federated learning: aggregation, RTIFed reputation/selection/epochs, the signed ledger,
hospital datasets and the Flower server and client apps. Imports no Django and reads no settings."""
