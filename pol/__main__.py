from pol.cli import main

main()
