// Live parts: an element with data-refresh is reloaded from that URL every five seconds. A session
// that ended shows as a redirect to the login page: the whole page goes there.
for (const part of document.querySelectorAll("[data-refresh]")) {
  setInterval(async () => {
    try {
      const answer = await fetch(part.dataset.refresh, { credentials: "same-origin" });
      if (answer.redirected) window.location.reload();
      else if (answer.ok) part.innerHTML = await answer.text();
    } catch {
      // the console is away for a moment: the next refresh tries again
    }
  }, 5000);
}
