document.getElementById("main")!.textContent = "Second Brain";
