from .exporter import main

main()
