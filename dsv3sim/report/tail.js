
(function check(n) {
  var figs = document.querySelectorAll('[FIGATTR]'), done = 0;
  figs.forEach(function (w) { if (w.querySelector('.main-svg')) done += 1; });
  document.body.setAttribute('data-plots-wanted', String(figs.length));
  document.body.setAttribute('data-plots-rendered', String(done));
  if (done < figs.length && n < 200) setTimeout(function () { check(n + 1); }, 50);
})(0);
