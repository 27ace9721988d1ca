"""The dealer management system (DMS) that autoroi replicates: its schema, a
simulator with known ground truth, and database connections."""
