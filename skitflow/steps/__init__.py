"""Built-in steps, one module per kind (and per connector).

Importing this package imports none of them: a task imports only the modules of its own steps
(named in the package), and the registry loads `skitflow.steps.builtin` through the
`skitflow.steps` entry point, exactly as it loads a plugin.
"""
