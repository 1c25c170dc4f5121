from kinfer_activator.cli import main

main()
