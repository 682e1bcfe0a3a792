"""The command-line shell: parses options, calls the library, renders results, picks exit codes."""
