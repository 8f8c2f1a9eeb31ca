from orthograd_cli.cli.app import main

main()
