from skitflow.cli import main

main()
