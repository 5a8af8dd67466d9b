// Live parts: an element with data-refresh is reloaded from that URL every five seconds.
for (const part of document.querySelectorAll("[data-refresh]")) {
  setInterval(async () => {
    const answer = await fetch(part.dataset.refresh, { credentials: "same-origin" });
    if (answer.ok) part.innerHTML = await answer.text();
  }, 5000);
}
