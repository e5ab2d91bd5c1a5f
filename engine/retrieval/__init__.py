"""PartRAG retrieval: image encoders (encoders.py, efficientnet_lite.py), the 3D side
(shape.py), rendered-view features (views.py), Hierarchical Contrastive Retrieval heads and
their training (hcr.py, train.py), the part library (library.py, builder.py, importers.py,
selection.py), the FAISS index and queries (index.py, search.py), figures (evaluate.py) and
the `library` command (cli.py)."""
