// Accelerator-hours per hour of one lease (metering/lease_usage.html).
// Data: {{ chart|json_script:"usage-data" }} ({hours, contracted, delivered, utilization, energy});
// labels: data-label-contracted, -delivered, -utilization, -energy and data-axis-y on #usage-chart.
(function () {
  "use strict";
  var box = document.getElementById("usage-chart");
  var source = document.getElementById("usage-data");
  if (!box || !source || !window.echarts || !window.SuanliCharts) { return; }
  var data = JSON.parse(source.textContent);
  var label = box.dataset;
  var chart = window.echarts.init(box, null, { renderer: "svg" });
  var narrow = box.clientWidth < 500;
  chart.setOption({
    color: ["#adb5bd", "#0d6efd", "#20c997", "#fd7e14"],
    tooltip: window.SuanliCharts.tooltip({ trigger: "axis" }),
    legend: { top: 0, type: "scroll" },
    grid: { left: 8, right: 8, top: 48, bottom: 40, containLabel: true },
    dataZoom: [{ type: "inside" }, { type: "slider", height: 16, bottom: 4 }],
    xAxis: { type: "category", data: data.hours, axisLabel: { hideOverlap: true } },
    yAxis: [
      { type: "value", name: narrow ? "" : label.axisY, nameTextStyle: { align: "left" } },
      { type: "value", name: narrow ? "" : "%", max: 100, splitLine: { show: false } }
    ],
    series: [
      { name: label.labelContracted, type: "line", step: "middle", symbol: "none", data: data.contracted, lineStyle: { type: "dashed" } },
      { name: label.labelDelivered, type: "bar", data: data.delivered },
      { name: label.labelUtilization, type: "line", yAxisIndex: 1, symbol: "none", data: data.utilization },
      { name: label.labelEnergy, type: "line", symbol: "none", data: data.energy }
    ]
  });
  window.addEventListener("resize", function () { chart.resize(); });
})();
