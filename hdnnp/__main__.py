from hdnnp.cli import main

main()
