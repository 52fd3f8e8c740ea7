from paramlens.cli import main

main()
