module kinfer.local/pause

go 1.26
