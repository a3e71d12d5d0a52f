"""RaVL's Stage 1: which image region feature a classifier leans on, found from region embeddings and scores."""
