"""Stage 3, build and emit: a Plan -> kfp DSL -> a KFP v2 package (pure); emit writes it to disk."""
