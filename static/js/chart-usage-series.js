// Usage per day or hour: an organisation's (metering/usage_overview.html) or a token contract's (contract_usage.html).
// Data: {{ series|json_script:"org-usage-data" }} ({buckets, accelerator_hours, utilization, energy, tokens_in,
// tokens_out}); labels in data-* attributes of #org-usage-chart and #org-token-chart.
(function () {
  "use strict";
  var source = document.getElementById("org-usage-data");
  if (!source || !window.echarts || !window.SuanliCharts) { return; }
  var data = JSON.parse(source.textContent);
  var charts = [];

  function draw(box, yAxis, series, colors) {
    var chart = window.echarts.init(box, null, { renderer: "svg" });
    chart.setOption({
      color: colors,
      tooltip: window.SuanliCharts.tooltip({ trigger: "axis" }),
      legend: { top: 0, type: "scroll" },
      grid: { left: 8, right: 8, top: 48, bottom: 8, containLabel: true },
      xAxis: { type: "category", data: data.buckets, axisLabel: { hideOverlap: true } },
      yAxis: yAxis,
      series: series
    });
    charts.push(chart);
  }

  var usage = document.getElementById("org-usage-chart");
  if (usage) {
    var label = usage.dataset;
    var narrow = usage.clientWidth < 500;
    draw(usage, [
      { type: "value", name: narrow ? "" : label.axisY, nameTextStyle: { align: "left" } },
      { type: "value", name: narrow ? "" : "%", max: 100, splitLine: { show: false } }
    ], [
      { name: label.labelHours, type: "bar", data: data.accelerator_hours },
      { name: label.labelUtilization, type: "line", yAxisIndex: 1, symbol: "none", data: data.utilization },
      { name: label.labelEnergy, type: "line", symbol: "none", data: data.energy }
    ], ["#0d6efd", "#20c997", "#fd7e14"]);
  }
  var tokens = document.getElementById("org-token-chart");
  if (tokens) {
    var t = tokens.dataset;
    draw(tokens, [{ type: "value", name: tokens.clientWidth < 500 ? "" : t.axisY }], [
      { name: t.labelIn, type: "bar", stack: "tokens", data: data.tokens_in },
      { name: t.labelOut, type: "bar", stack: "tokens", data: data.tokens_out }
    ], ["#6610f2", "#d63384"]);
  }
  window.addEventListener("resize", function () { charts.forEach(function (c) { c.resize(); }); });
})();
