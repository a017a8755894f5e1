LABEL=s45-final bench/attachments.sh standalone
