"""Partsmith's inference engine, in layers: a module imports only from its own layer and the
layers below it (tests/test_layers.py checks every import, at top level or in a function).

    base        where to compute and a stopwatch for stage timings (engine/device.py),
                atomic file writes (engine/files.py), heap trimming (engine/memory.py)
    geometry    meshes: surface sampling and metrics, inside tests, extraction, clean-up
    models      the networks and their checkpoint folders (VecSet VAE, Geom-Seg VAE, DiT)
    render      Blender Workbench renders, cameras, contact sheets, input-image preparation
    data        part-structured assets, the procedural dataset, training caches
    retrieval   the part library, encoders, HCR, exemplar banks and conditioning
    pipelines   image -> parts: the bundle contract, PartRAG and the files it writes
    training    the training loop and the recipes of every trained model (exports bundles
                through the pipelines' save_pretrained)
    eval        figures of trained models and pipelines
    batch       many images through the pipelines, embedded or on Ray, resumable
    server      the engine process behind the bridge, and the services it runs
    cli         command lines: engine/cli.py, engine/demo.py, and each package's cli.py and
                *_cli.py (argument parsing only, over the functions of the layers below)

`bridge/` sits below all of them: the engine and the add-on share it, it imports no engine.
"""

LAYERS = ("base", "geometry", "models", "render", "data", "retrieval", "pipelines",
          "training", "eval", "batch", "server", "cli")
